"""The model's files and runtimes: model folders and their cards, the ONNX sessions,
batching of concurrent calls, the GPU solve. :class:`flowdec.pipeline.model.Model` assembles
them into stages and chains."""
