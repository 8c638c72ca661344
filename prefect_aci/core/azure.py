"""What more than one stage needs of Azure: the credential every command signs in with, the hint
that says how to get one, and the rule that tells an Azure Container Registry by its name."""

from azure.core.credentials import TokenCredential

from prefect_aci.core.errors import UserError

# Login servers of Azure Container Registry in the public and sovereign clouds.
ACR_SUFFIXES = (".azurecr.io", ".azurecr.cn", ".azurecr.us")
LOGIN_HINT = (
    "log in with `az login`, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for "
    "a service principal, or run where a managed identity is assigned"
)


def is_acr(registry: str | None) -> bool:
    """Whether ``registry`` (a login server) is an Azure Container Registry."""
    return bool(registry) and registry.lower().endswith(ACR_SUFFIXES)


def default_credential() -> TokenCredential:
    """DefaultAzureCredential (az login, a service principal, a managed identity), or one line
    saying what is wrong with its settings."""
    from azure.identity import DefaultAzureCredential

    try:
        return DefaultAzureCredential()
    except ValueError as exc:
        # e.g. AZURE_CLIENT_ID set but empty: azure-identity refuses to build the credential.
        raise UserError(
            f"the Azure credential settings are incomplete ({exc}); set "
            "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET together, "
            "or unset them"
        ) from None
