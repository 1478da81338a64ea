"""The networks: LRCN and ConvLSTM builders and the ImageNet frame encoder."""
