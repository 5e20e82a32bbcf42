"""The guided-segmentation engine both segmentation tasks use (ct-lung: lesions in the lungs; segmentation: any
target in its organ): no task package imports another, both import this.

Modules (heavy; nothing is imported here): ``nets`` (3D or slice-by-slice 2D networks from ``SEG_MODELS``,
one output per label), ``guided`` (a ``LESION_GUIDANCE`` strategy applied to whole volumes; the organ is
called ``lung`` in its fields, ct-lung's first case), ``training`` (patch training, sliding-window inference,
decoding several outputs) and ``target_stage`` (the second stage: train the searched network, score every
case, per label when there are several).
"""
