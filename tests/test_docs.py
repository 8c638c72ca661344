"""The README is a front door: within its bound, its first commands as promised, every page of
docs/ linked, every relative link of the README and the pages pointing at something that exists,
and .env.example naming only settings the code reads."""

import re

from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.core.settings import PREFIX, env_name

README = PROJECT_ROOT / "README.md"
DOCS = PROJECT_ROOT / "docs"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_readme_is_a_front_door_within_its_bound():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250
    block = lines[lines.index("```sh") + 1 : lines.index("```")]
    assert [line.split()[:2] for line in block] == [["make", "demo"], ["make", "test"]]


def test_every_page_in_docs_is_linked_from_the_readme():
    linked = set(LINK.findall(README.read_text()))
    pages = {f"docs/{page.name}" for page in DOCS.glob("*.md")}
    assert pages <= linked, f"not linked: {sorted(pages - linked)}"


def test_relative_links_point_at_files_that_exist():
    broken = []
    for page in [README, *DOCS.glob("*.md")]:
        for target in LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.name}: {target}")
    assert broken == []


def test_env_example_names_only_settings_the_code_reads():
    from arm.settings import InfraSettings, SweepSettings
    from blocks.inputs import RegistrationSettings
    from image_builder.registry import RegistryCredentials
    from image_builder.settings import ImageSettings

    models = [
        ImageSettings,
        RegistryCredentials,
        InfraSettings,
        SweepSettings,
        RegistrationSettings,
    ]
    known = {env_name(model, field) for model in models for field in model.model_fields}
    # Read by other tools, not by a settings model of ours.
    known |= {"PREFECT_ACI_DEBUG", "PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"}
    known |= {"AZURE_TOKEN_CREDENTIALS", "AZURE_CLIENT_SECRET"}  # azure-identity's
    # Read by prefect deploy, from flows/prefect.yaml.
    known |= set(
        re.findall(r"\{\{ \$(\w+) \}\}", (PROJECT_ROOT / "flows/prefect.yaml").read_text())
    )
    named = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (PROJECT_ROOT / ".env.example").read_text(), re.M)
    )
    assert named, ".env.example names no setting"
    assert named <= known, f"unknown: {sorted(named - known)}"
    ours = {name for name in known if name.startswith(PREFIX)} - {"PREFECT_ACI_DEBUG"}
    assert ours <= named, f"missing from .env.example: {sorted(ours - named)}"
