"""Metrics for generated videos, one module per metric family.

``CATALOG`` maps each registered name to its lazy ``"module:attr"`` entry; vqbench's metric
registry is built from it. Latency, memory and packed bytes are measured by the harness
(:mod:`vqbench.measure`) and paired statistics live in :mod:`vqbench.stats`; neither is a metric.
"""

CATALOG: dict[str, str] = {
    "psnr_fp": "metrics.fidelity:PSNRvsFP",
    "ssim_fp": "metrics.fidelity:SSIMvsFP",
    "fvd": "metrics.fvd:FVDvsReference",
    "fvd_fp": "metrics.fvd:FVDvsFP",
    "clipsim_evalcrafter": "metrics.clip_score:CLIPSimEvalCrafter",
    "clipsim": "metrics.clip_score:CLIPSim",
    "clip_temp": "metrics.clip_score:CLIPTemp",
    "scene_consistency": "metrics.scene:SceneConsistency",
    "temporal_flickering": "metrics.flicker:TemporalFlickering",
    "imaging_quality": "metrics.imaging:ImagingQuality",
    "attribute_accuracy": "metrics.attributes:AttributeAccuracy",
    "vbench_subject_consistency": "metrics.vbench_dims:SubjectConsistency",
    "vbench_background_consistency": "metrics.vbench_dims:BackgroundConsistency",
    "vbench_motion_smoothness": "metrics.vbench_dims:MotionSmoothness",
    "vbench_dynamic_degree": "metrics.vbench_dims:DynamicDegree",
    "vbench_aesthetic_quality": "metrics.vbench_dims:AestheticQuality",
    "vbench_imaging_quality": "metrics.vbench_dims:ImagingQuality",
    "vbench_temporal_flickering": "metrics.vbench_dims:TemporalFlickering",
    "vbench_overall_consistency": "metrics.vbench_dims:OverallConsistency",
}
