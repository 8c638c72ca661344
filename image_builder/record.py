"""build/image.json: the one image reference every later stage reads."""

from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from image_builder.errors import UserError


class ImageRecord(BaseModel):
    image_id: str = Field(description="Local image id (sha256:...) of the built image.")
    repository: str = Field(description="Local repository name.")
    local_tags: list[str] = Field(description="Tags applied locally, repository included.")
    base_image: str = Field(description="Base image the build started from.")
    versions: dict[str, str] = Field(description="python, prefect, prefect_azure, as run.")
    labels: dict[str, str] = Field(default_factory=dict)
    registry: str | None = Field(None, description="Registry the image was pushed to.")
    tags: list[str] = Field(default_factory=list, description="Tags pushed to the registry.")
    digest: str | None = Field(None, description="Manifest digest read back from the registry.")
    reference: str | None = Field(
        None, description="Pinned reference <registry>/<repository>@<digest> for later stages."
    )


def write_record(path: Path, record: ImageRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(record.model_dump_json(indent=2) + "\n")
    tmp.replace(path)


def read_record(path: Path) -> ImageRecord:
    if not path.is_file():
        raise UserError(f"{path} does not exist; build the image first (make image)")
    try:
        return ImageRecord.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise UserError(
            f"{path} is not a valid image record ({exc.error_count()} errors); "
            "rebuild with make image"
        ) from None
