"""Create or update every stream, with the operator's NATS credential.

Services cannot create or change streams (marketbot.contracts.access); the operator does,
before the services start: ``make run`` and the tests do it in-process, Kubernetes runs this
as the ``nats-provision`` Job (deploy/k8s/base/nats/provision-job.yaml).

    NATS_URL=tls://nats:4222 NATS_USER=operator NATS_PASSWORD=... \\
        python -m marketbot.runtime.provision
"""

from __future__ import annotations

import asyncio
import os

from pydantic import AliasChoices, Field, SecretStr

from marketbot.runtime.bus import Bus
from marketbot.runtime.logs import configure_logging, get_logger
from marketbot.runtime.settings import ServiceSettings, service_config

log = get_logger("marketbot.provision")


class ProvisionSettings(ServiceSettings):
    model_config = service_config("MARKETBOT_PROVISION_")

    service_name: str = "nats-provision"
    nats_user: str = Field(
        default="operator", validation_alias=AliasChoices("NATS_USER", "nats_user")
    )
    nats_password: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("NATS_PASSWORD", "nats_password")
    )

    def operator_url(self) -> str:
        if self.nats_password is None or "@" in self.nats_url:
            return self.nats_url
        scheme, sep, rest = self.nats_url.partition("://")
        return f"{scheme}{sep}{self.nats_user}:{self.nats_password.get_secret_value()}@{rest}"


async def provision(settings: ProvisionSettings) -> int:
    bus = await Bus.connect(
        settings.operator_url(),
        settings.service_name,
        settings.namespace,
        credentials=settings.nats_credentials,
    )
    try:
        await bus.provision(settings.stream_replicas)
    finally:
        await bus.close()
    names = [spec.name for spec in settings.namespace.streams()]
    log.info("streams provisioned", streams=names, replicas=settings.stream_replicas)
    return len(names)


def main() -> int:
    settings = ProvisionSettings()
    configure_logging(settings.service_name, os.environ.get("LOG_LEVEL", "INFO"))
    asyncio.run(provision(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
