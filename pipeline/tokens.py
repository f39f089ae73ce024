"""The special tokens every tokenizer of the pipeline carries (one home for the models and the turn format)."""

EOT = "<|eot|>"   # ends an agent turn
PAD = "<|pad|>"   # right padding of training batches, left padding at inference
OBS = "<|obs|>"   # one pixel observation (its image and proprioception travel beside the ids)
