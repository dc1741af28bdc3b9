"""ledviz: LED (Longformer-Encoder-Decoder) in plain PyTorch, and tools to see how it reads a document."""

from .config import LEDConfig
from .errors import (
    CheckpointError,
    ConfigError,
    GenerationSettingsError,
    InputError,
    LedvizError,
    WeightShapeError,
)
from .modeling import (
    LEDDecoder,
    LEDEncoder,
    LEDForConditionalGeneration,
    LEDForQuestionAnswering,
    LEDForSequenceClassification,
    LEDModel,
    shift_tokens_right,
)
from .outputs import (
    LEDEncoderBaseModelOutput,
    LEDSeq2SeqLMOutput,
    LEDSeq2SeqModelOutput,
    LEDSeq2SeqQuestionAnsweringModelOutput,
    LEDSeq2SeqSequenceClassifierOutput,
)
from .pretrained import LEDPreTrainedModel

try:  # the tokenizers are optional for model-only use (they need the `tokenizers` package)
    from .tokenization import LEDTokenizer, LEDTokenizerFast
except ImportError:  # pragma: no cover
    pass

__version__ = "0.1.0"
