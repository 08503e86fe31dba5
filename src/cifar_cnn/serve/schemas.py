"""The JSON bodies the service answers with, as Pydantic models for the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """Every error, on every route (as TensorFlow Serving answers errors)."""

    error: str = Field(description="what was wrong, naming the file, and what to do")


class ModelRef(BaseModel):
    name: str = Field(description="the run's name")
    version: str = Field(description="the first 12 hex digits of the SHA-256 of model.keras")


class ClassProbability(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_: str = Field(alias="class")
    probability: float


class FilePrediction(BaseModel):
    file: str = Field(description="the uploaded file's name ('body' for a raw body)")
    label: str = Field(description="the most likely class")
    probabilities: dict[str, float] = Field(
        description="every class, in the model's order; they sum to 1")
    top_k: list[ClassProbability] = Field(description="the top_k most likely, most likely first")
    calibrated: bool = Field(description="whether temperature scaling was applied")
    tta: str | None = Field(description="the test-time augmentation used (null: none)")


class PredictResponse(BaseModel):
    model: ModelRef
    predictions: list[FilePrediction] = Field(description="one per file, in request order")


class TFServingPredictResponse(BaseModel):
    """``predictions`` for a row-format request (``instances``), ``outputs`` for columnar."""

    predictions: list[list[float]] | None = Field(
        None, description="per instance, the probability of every class in the model's order")
    outputs: list[list[float]] | None = None


class VersionStatus(BaseModel):
    version: str
    state: str = Field(description="AVAILABLE once warmed up, LOADING before")
    status: dict[str, str] = Field(examples=[{"error_code": "OK", "error_message": ""}])


class ModelStatus(BaseModel):
    model_version_status: list[VersionStatus]


class ModelInfo(BaseModel):
    """The model's card (`cifar_cnn.card.ModelCard`, its public entries) and how it is
    served."""

    model_config = ConfigDict(extra="allow")

    name: str
    version: str = Field(description="the first 12 hex digits of the model file's SHA-256")
    class_names: list[str]
    input: dict[str, Any] = Field(description="shape, dtype, range, resize policy")
    recipe: dict[str, Any] | None = Field(None, description="the resolved training recipe")
    plan: dict[str, Any] | None = Field(
        None, description="what training chose for the data (image size, batch, epochs, the "
        "model it started from) and what decided each")
    final_metrics: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = Field(
        None, description="the temperature per test-time augmentation mode")
    epochs_done: int | None = None
    provenance: dict[str, Any] | None = Field(
        None, description="how a packaged model was made and measured")
    export: dict[str, Any] | None = Field(
        None, description="an export's format, quantization, baked temperature and source")
    default_tta: str | None = Field(description="the test-time augmentation of tta=default")
    calibrated: bool = Field(description="whether the model has calibration temperatures")
    limits: dict[str, float] = Field(description="what one request may send")


class Status(BaseModel):
    status: str
