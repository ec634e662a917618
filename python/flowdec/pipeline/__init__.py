"""The one processing contract (:class:`~flowdec.pipeline.stages.Stage`), the model's stages
and the encode/decode chains every path uses."""
