from torch import nn

from ensemble.models.backbones.recurrent import RecurrentNet


class LSTMNet(RecurrentNet):
    """LSTM over the window; the last hidden state feeds a linear classifier."""

    cell = nn.LSTM
