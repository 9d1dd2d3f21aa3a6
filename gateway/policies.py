"""Brand policies as the pure `routing.policy.BrandPolicy`, parsed once per version."""

from __future__ import annotations

from gateway.store.directory import Directory
from routing.policy import BrandPolicy, policy_from_json


class PolicyCache:
    def __init__(self, directory: Directory) -> None:
        self._directory = directory
        self._parsed: dict[tuple[str, int], BrandPolicy] = {}

    async def for_brand(self, domain: str) -> BrandPolicy | None:
        brand = await self._directory.brand(domain)
        if brand is None:
            return None
        key = (domain, brand.policy_version)
        policy = self._parsed.get(key)
        if policy is None:
            policy = policy_from_json(brand.policy)
            self._parsed[key] = policy
        return policy
