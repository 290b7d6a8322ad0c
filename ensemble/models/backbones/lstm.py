from torch import nn

from ensemble.models.backbones.recurrent import RecurrentNet
from ensemble.models.registry import register


@register("lstm", family="neural")
class LSTMNet(RecurrentNet):
    """LSTM over the window; the last hidden state feeds a linear classifier."""

    cell = nn.LSTM
