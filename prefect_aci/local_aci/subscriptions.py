"""What Resource Manager answers above a resource group, in its REST shapes: the cloud's metadata
endpoint (`GET /metadata/endpoints`, which `az cloud register` reads), the tenants and
subscriptions the caller may see (Microsoft.Resources subscriptions.json: Tenants_List,
Subscriptions_List, Subscriptions_Get), the resource providers and the types they serve
(Providers_List, Providers_Get) and the resource groups (ResourceGroups_List).

The local Azure has one tenant, one subscription and one resource group (LocalAzure); the
providers are those whose types local Resource Manager deploys (the vendored schemas), all
registered, in the local Azure's one location."""

from collections import defaultdict

from prefect_aci.local_aci.config import LocalAzure
from prefect_aci.local_aci.schema import ResourceSchemas

# Azure's public cloud suffixes: the stand-ins answer at Azure's own host names
# (<vault>.vault.azure.net, <registry>.azurecr.io), so a client builds their URLs as on Azure.
SUFFIXES = {
    "acrLoginServer": "azurecr.io",
    "keyVaultDns": "vault.azure.net",
    "storage": "core.windows.net",
    "mhsmDns": "managedhsm.azure.net",
    "attestationEndpoint": "attest.azure.net",
    "sqlServerHostname": "database.windows.net",
    "mysqlServerEndpoint": "mysql.database.azure.com",
    "postgresqlServerEndpoint": "postgres.database.azure.com",
    "mariadbServerEndpoint": "mariadb.database.azure.com",
    "synapseAnalytics": "dev.azuresynapse.net",
    "storageSyncEndpointSuffix": "afs.azure.net",
    "azureDataLakeStoreFileSystem": "azuredatalakestore.net",
    "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
}
# The token audiences Resource Manager takes, the first the one clients ask for (Azure's public
# cloud lists the same two; local Resource Manager takes tokens for either).
AUDIENCES = ["https://management.core.windows.net/", "https://management.azure.com/"]
# The provider Resource Manager itself is, with the types a caller reads through it.
RESOURCES_TYPES = {
    "Microsoft.Resources": [
        "deployments",
        "deployments/operationStatuses",
        "resourceGroups",
        "subscriptions",
        "tenants",
        "providers",
    ]
}
RESOURCES_API_VERSIONS = ["2025-04-01", "2024-11-01", "2024-03-01", "2022-12-01", "2022-09-01"]


def cloud_metadata(resource_manager: str, name: str = "LocalAzure") -> dict:
    """The metadata endpoint's answer (api-version 2022-09-01: the one cloud whose Resource
    Manager answered, not a list): Resource Manager at ``resource_manager`` (where the caller
    reached it), Microsoft Entra's login endpoint and Azure's audiences and suffixes. There is
    no local sign-in page: `az login --identity` (the App Service managed identity protocol)
    is how one signs in here."""
    origin = resource_manager.rstrip("/") + "/"
    return {
        "name": name,
        "portal": "https://portal.azure.com",
        "resourceManager": origin,
        "authentication": {
            "loginEndpoint": "https://login.microsoftonline.com",
            "audiences": AUDIENCES,
            "tenant": "common",
            "identityProvider": "AAD",
        },
        "graph": "https://graph.windows.net/",
        "graphAudience": "https://graph.windows.net/",
        "microsoftGraphResourceId": "https://graph.microsoft.com/",
        "media": "https://rest.media.azure.net",
        "batch": "https://batch.core.windows.net/",
        "sqlManagement": "https://management.core.windows.net:8443/",
        "activeDirectoryDataLake": "https://datalake.azure.net/",
        "appInsightsResourceId": "https://api.applicationinsights.io",
        "appInsightsTelemetryChannelResourceId": "https://dc.applicationinsights.azure.com/v2/track",
        "attestationResourceId": "https://attest.azure.net",
        "synapseAnalyticsResourceId": "https://dev.azuresynapse.net",
        "logAnalyticsResourceId": "https://api.loganalytics.io",
        "ossrDbmsResourceId": "https://ossrdbms-aad.database.windows.net",
        "suffixes": dict(SUFFIXES),
    }


def tenant(config: LocalAzure) -> dict:
    """A tenant as Tenants_List gives it (TenantIdDescription)."""
    return {
        "id": f"/tenants/{config.tenant_id}",
        "tenantId": config.tenant_id,
        "tenantCategory": "Home",
        "displayName": "Local Azure",
        "defaultDomain": "localazure.onmicrosoft.com",
        "domains": ["localazure.onmicrosoft.com"],
        "tenantType": "AAD",
    }


def subscription(config: LocalAzure) -> dict:
    """The subscription as Subscriptions_Get gives it."""
    return {
        "id": f"/subscriptions/{config.subscription_id}",
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": config.subscription_id,
        "tenantId": config.tenant_id,
        "displayName": "Local Azure",
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off",
        },
    }


def providers(config: LocalAzure, schemas: ResourceSchemas) -> list[dict]:
    """Every provider whose types local Resource Manager serves, registered, each type with the
    apiVersions whose schemas it holds, in the local Azure's location; sorted by namespace."""
    types: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for namespace, resource_types in RESOURCES_TYPES.items():
        for resource_type in resource_types:
            types[namespace][resource_type].update(RESOURCES_API_VERSIONS)
    for kind, version in schemas.definitions:
        namespace, _, resource_type = schemas.spelling.get(kind, kind).partition("/")
        types[namespace][resource_type].add(version)
    return [_provider(config, n, types[n]) for n in sorted(types, key=str.lower)]


def _provider(config: LocalAzure, namespace: str, types: dict[str, set[str]]) -> dict:
    return {
        "id": f"/subscriptions/{config.subscription_id}/providers/{namespace}",
        "namespace": namespace,
        "registrationState": "Registered",
        "registrationPolicy": "RegistrationRequired",
        "resourceTypes": [
            {
                "resourceType": resource_type,
                "locations": [config.location],
                "apiVersions": sorted(versions, reverse=True),
                "capabilities": "None",
            }
            for resource_type, versions in sorted(types.items())
        ],
    }


def provider(config: LocalAzure, schemas: ResourceSchemas, namespace: str) -> dict | None:
    """One provider as Providers_Get gives it; None when local Azure serves no such namespace."""
    return next(
        (p for p in providers(config, schemas) if p["namespace"].lower() == namespace.lower()),
        None,
    )
