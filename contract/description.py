"""How a service describes itself to the engine (CONTRACT.md §5)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)


class FieldType(StrEnum):
    """The only MIME types the engine accepts for a field."""

    IMAGE_JPEG = "image/jpeg"
    IMAGE_PNG = "image/png"
    TEXT_PLAIN = "text/plain"
    TEXT_CSV = "text/csv"
    APPLICATION_JSON = "application/json"
    APPLICATION_PDF = "application/pdf"
    APPLICATION_ZIP = "application/zip"
    AUDIO_MPEG = "audio/mpeg"
    AUDIO_OGG = "audio/ogg"


# Extension written for each type, and the extensions read as it.
EXTENSIONS: dict[FieldType, tuple[str, ...]] = {
    FieldType.IMAGE_JPEG: (".jpg", ".jpeg"),
    FieldType.IMAGE_PNG: (".png",),
    FieldType.TEXT_PLAIN: (".txt",),
    FieldType.TEXT_CSV: (".csv",),
    FieldType.APPLICATION_JSON: (".json",),
    FieldType.APPLICATION_PDF: (".pdf",),
    FieldType.APPLICATION_ZIP: (".zip",),
    FieldType.AUDIO_MPEG: (".mp3",),
    FieldType.AUDIO_OGG: (".ogg",),
}


def extension_of(field_type: FieldType) -> str:
    """The extension an output of this type is stored under."""
    return EXTENSIONS[field_type][0]


def type_of_key(key: str) -> FieldType | None:
    """The type an S3 key stands for, from its extension; None when unknown."""
    lowered = key.lower()
    for field_type, extensions in EXTENSIONS.items():
        if lowered.endswith(extensions):
            return field_type
    return None


class Tag(StrEnum):
    """ExecutionUnitTag names the engine knows, each with its acronym below."""

    GENERIC = "Generic"
    IMAGE_PROCESSING = "Image Processing"
    IMAGE_RECOGNITION = "Image Recognition"
    IMAGE_GENERATION = "Image Generation"
    AUDIO_PROCESSING = "Audio Processing"
    AUDIO_GENERATION = "Audio Generation"
    VIDEO_PROCESSING = "Video Processing"
    VIDEO_GENERATION = "Video Generation"
    DOCUMENT_PROCESSING = "Document Processing"
    DOCUMENT_GENERATION = "Document Generation"
    DATA_PREPROCESSING = "Data Preprocessing"
    NATURAL_LANGUAGE_PROCESSING = "Natural Language Processing"
    ANOMALY_DETECTION = "Anomaly Detection"
    RECOMMENDATION = "Recommendation"
    TIME_SERIES = "Time Series"
    CLUSTERING = "Clustering"
    SEGMENTATION = "Segmentation"
    SPEECH_RECOGNITION = "Speech Recognition"
    SENTIMENT_ANALYSIS = "Sentiment Analysis"
    NEURAL_NETWORKS = "Neural Networks"
    EXPLAINABLE_AI = "Explainable AI"


ACRONYMS: dict[Tag, str] = {
    Tag.GENERIC: "GNR",
    Tag.IMAGE_PROCESSING: "IP",
    Tag.IMAGE_RECOGNITION: "IR",
    Tag.IMAGE_GENERATION: "IG",
    Tag.AUDIO_PROCESSING: "AP",
    Tag.AUDIO_GENERATION: "AG",
    Tag.VIDEO_PROCESSING: "VP",
    Tag.VIDEO_GENERATION: "VG",
    Tag.DOCUMENT_PROCESSING: "DP",
    Tag.DOCUMENT_GENERATION: "DG",
    Tag.DATA_PREPROCESSING: "DPP",
    Tag.NATURAL_LANGUAGE_PROCESSING: "NLP",
    Tag.ANOMALY_DETECTION: "AD",
    Tag.RECOMMENDATION: "R",
    Tag.TIME_SERIES: "TS",
    Tag.CLUSTERING: "C",
    Tag.SEGMENTATION: "S",
    Tag.SPEECH_RECOGNITION: "SR",
    Tag.SENTIMENT_ANALYSIS: "SA",
    Tag.NEURAL_NETWORKS: "NN",
    Tag.EXPLAINABLE_AI: "XAI",
}


class FieldDescription(BaseModel):
    """One input or output of a service; `name` must be a Python identifier."""

    name: str
    type: list[FieldType] = Field(min_length=1)
    format_hint: Any = None

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not name.isidentifier():
            raise ValueError(f"field name {name!r} is not a valid Python identifier")
        return name

    @field_validator("type", mode="wrap")
    @classmethod
    def _engine_types(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> list[FieldType]:
        # pydantic's own message would not say which field is wrong.
        try:
            types: list[FieldType] = handler(value)
        except ValidationError:
            allowed = ", ".join(field_type.value for field_type in FieldType)
            name = info.data.get("name", "?")
            raise ValueError(
                f"field {name!r}: type must list one or more of {allowed}; got {value!r}"
            ) from None
        return types


class ServiceDescription(BaseModel):
    """What a service says about itself; `url` and `status` are added when announced."""

    name: str
    slug: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    summary: str
    description: str
    data_in_fields: list[FieldDescription] = Field(min_length=1)
    data_out_fields: list[FieldDescription] = Field(min_length=1)
    tags: list[Tag] = Field(default_factory=list)
    has_ai: bool = False
    docs_url: str | None = None

    def announcement(self, url: str) -> dict[str, Any]:
        """The body POSTed to `{engine}/services`."""
        body = self.model_dump(mode="json", exclude={"tags"})
        body["url"] = url
        body["status"] = "available"
        body["tags"] = [{"name": tag.value, "acronym": ACRONYMS[tag]} for tag in self.tags]
        return body
