"""Settings of the cmdb service, read from `CMDB_*` and `OODA_*` environment variables."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from cmdb.domain import MAX_SEQUENCE_GAP, AttributeSchema
from ooda.settings import ServiceSettings

DEFAULT_ATTRIBUTE_SCHEMAS = {
    # The pipeline starts the sample workload with this capacity (docs/interfaces.md).
    "application_spec": AttributeSchema.model_validate(
        {"attributes": {"capacity_rps": {"type": "number"}}}
    ),
    # How the pipeline's ssh driver reaches a host (services/pipeline/README.md).
    "host": AttributeSchema.model_validate(
        {
            "attributes": {
                "ssh_port": {"type": "integer"},
                "ssh_user": {"type": "string"},
                "ssh_remote_dir": {"type": "string"},
            }
        }
    ),
}


class Settings(ServiceSettings):
    """Environment of the cmdb service."""

    model_config = SettingsConfigDict(env_prefix="CMDB_", extra="ignore")

    service_name: str = "cmdb"
    port: int = 8001
    max_sequence_gap: int = Field(
        MAX_SEQUENCE_GAP,
        ge=1,
        description=(
            "how far past the applied sequence of an application a deploy-done may be; one "
            "further ahead is dead-lettered (raise it for a while after restoring an old backup)"
        ),
    )
    import_max_bytes: int = Field(
        64 * 1024 * 1024,
        gt=0,
        description="largest body of POST /v1/import (413 past it, refused while it streams)",
    )
    attribute_schemas: dict[str, AttributeSchema] = Field(
        default_factory=lambda: dict(DEFAULT_ATTRIBUTE_SCHEMAS),
        description=(
            "custom attributes each item kind accepts, as JSON, e.g. "
            '{"host": {"attributes": {"rack": {"type": "string"}}}}; a kind without a schema '
            "accepts no custom attributes"
        ),
    )
