"""Class sets: the known (ID) classes a model recognises, from a preset file or a list of names."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources

DEFAULT_TEMPLATE = "a photo of a {}"
#: characters in a prompt template; with a prompt of at most as many, a filled prompt stays short
MAX_TEMPLATE = 2000


class UnknownPresetError(ValueError):
    pass


@dataclass(frozen=True)
class ClassSet:
    """Known classes with the text each one puts in the prompt template."""

    names: tuple[str, ...]
    prompts: tuple[str, ...]
    template: str = DEFAULT_TEMPLATE
    descriptions: tuple[str, ...] = ()
    preset: str | None = None
    title: str = ""
    domain: str = ""
    #: classes of the preset that are *not* known (held out as OOD); informational
    unknown_names: tuple[str, ...] = field(default=())
    #: negative classes: they join every softmax (head option ``num_negatives``) but are never
    #: a prediction; backbone labels outside the known set, e.g. for medmnist-densenet121
    negatives: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if not self.names:
            raise ValueError("a class set needs at least one class")
        if len(set(n.lower() for n in self.names)) != len(self.names):
            raise ValueError(f"duplicate class names in {list(self.names)}")
        if len(self.prompts) != len(self.names):
            raise ValueError("one prompt per class is needed")
        check_template(self.template)

    @property
    def texts(self) -> list[str]:
        """The full prompts, e.g. 'a photo of a melanoma'."""
        return [fill_template(self.template, p) for p in self.prompts]

    def key(self) -> tuple:
        return (self.names, tuple(self.texts), self.negatives)

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "prompts": list(self.prompts),
            "template": self.template,
            "descriptions": list(self.descriptions),
            "preset": self.preset,
            "negatives": list(self.negatives),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ClassSet:
        return cls(
            names=tuple(d["names"]),
            prompts=tuple(d["prompts"]),
            template=d.get("template", DEFAULT_TEMPLATE),
            descriptions=tuple(d.get("descriptions", ())),
            preset=d.get("preset"),
            negatives=tuple(d.get("negatives", ())),
        )


def check_template(template) -> str:
    """A prompt template in the only grammar accepted: literal text with exactly one ``{}``,
    where the class's text goes — no other brace, so no field name, attribute, index, format
    spec or escaped brace — and at most ``MAX_TEMPLATE`` characters. Decided from the text
    alone; raises ``ValueError`` with one sentence."""
    if (
        not isinstance(template, str)
        or len(template) > MAX_TEMPLATE
        or template.count("{}") != 1
        or template.count("{") != 1
        or template.count("}") != 1
    ):
        raise ValueError(
            f"the prompt template must be text of at most {MAX_TEMPLATE} characters with exactly one {{}} "
            "and no other braces, e.g. 'a photo of a {}'"
        )
    return template


def fill_template(template: str, text: str) -> str:
    """``template`` with ``text`` in place of its ``{}`` (a plain replacement, never ``str.format``)."""
    return check_template(template).replace("{}", text, 1)


def list_presets() -> list[str]:
    return sorted(
        p.name[:-5] for p in resources.files("hvl_core.resources.presets").iterdir() if p.name.endswith(".json")
    )


def preset_info(name: str) -> dict:
    """The raw preset file (classes with name, abbrev, id, prompt, description)."""
    path = resources.files("hvl_core.resources.presets") / f"{name}.json"
    if not path.is_file():
        raise UnknownPresetError(f"unknown preset {name!r}; available: {', '.join(list_presets())}")
    return json.loads(path.read_text())


def load_preset(name: str, template: str | None = None) -> ClassSet:
    """The known classes of a preset (``dermatology-isic4``, ``histology-nct-crc``)."""
    info = preset_info(name)
    known = [c for c in info["classes"] if c["id"]]
    negatives = tuple(c.get("prompt", c["name"]) for c in info["classes"] if c.get("negative"))
    return ClassSet(
        names=tuple(c["name"] for c in known),
        prompts=tuple(c.get("prompt", c["name"]) for c in known),
        template=template or info.get("template", DEFAULT_TEMPLATE),
        descriptions=tuple(c.get("description", "") for c in known),
        preset=name,
        title=info.get("title", name),
        domain=info.get("domain", ""),
        unknown_names=tuple(c["name"] for c in info["classes"] if not c["id"] and not c.get("negative")),
        negatives=negatives,
    )


def split_class_list(text: str) -> tuple[str, ...]:
    """A typed class list — comma- or newline-separated entries — as its non-empty entries."""
    return tuple(p.strip() for p in (text or "").replace("\n", ",").split(",") if p.strip())


def norm_name(name: str) -> str:
    """Case-insensitive key of a class or folder name: lower case, ``_``/``-``/spaces alike."""
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def class_set_from_names(names, template: str | None = None) -> ClassSet:
    """A custom class set. Each entry is a name, or ``"name: longer description for the prompt"``;
    a string is split with ``split_class_list``."""
    if isinstance(names, str):
        names = split_class_list(names)
    parsed = []
    for raw in names:
        raw = raw.strip()
        if not raw:
            continue
        name, _, desc = raw.partition(":")
        parsed.append((name.strip(), desc.strip() or name.strip()))
    if not parsed:
        raise ValueError("no class names given")
    return ClassSet(
        names=tuple(n for n, _ in parsed),
        prompts=tuple(d for _, d in parsed),
        template=template or DEFAULT_TEMPLATE,
        descriptions=tuple(d for _, d in parsed),
    )
