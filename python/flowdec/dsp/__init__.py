"""Signal processing: the compressed-STFT features, the flow-matching solver kernels (C++ and
CUDA, each with a numpy reference), band envelopes, and the level side information."""
