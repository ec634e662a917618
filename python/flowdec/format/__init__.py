"""The ``.fdc`` bitstream: header, packets, code packing."""
