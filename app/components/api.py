"""The public endpoints ``/predict`` and ``/batch``, which the MCP server also lists as the tools
``hvl_predict`` and ``hvl_batch``: ``gr.api`` functions (no components), so the API's and the
tools' parameter types come from the type hints, their descriptions from the ``Args:`` lines,
and both answer JSON text (``app.api.PREDICT_FIELDS``)."""

from __future__ import annotations

import gradio as gr

from .. import api
from ..service import API_GROUP, DEFAULT_PRESET


def register(service) -> None:
    """Both endpoints, in the API's queue group (one encoder run at a time, beside the page's)."""

    def hvl_predict(
        image: str,
        preset: str = DEFAULT_PRESET,
        classes: str = "",
        score: str = api.AUTO,
        threshold: float | None = None,
    ) -> str:
        """Decide whether a medical image shows one of the known classes (known) or something else (unknown, refer to a specialist), with HVL (hierarchical vision-language OOD detection). Returns JSON text: verdict ("known"/"unknown"), label (the most likely known class), score, score_name, threshold (same units), threshold_source, p_value (conformal, when the model is calibrated, else null), top classes with probabilities, and the model used.

        Args:
            image: the image, as an https:// URL of a public image or a data: URI (data:image/png;base64,...); PNG, JPEG, TIFF, BMP, WebP or DICOM.
            preset: the known classes: "dermatology-isic4" (skin lesions: melanocytic nevus, melanoma, dermatofibroma, vascular lesion) or "histology-nct-crc" (colorectal H&E tissue types). Ignored when classes is given.
            classes: your own known classes instead of a preset, comma-separated (e.g. "melanoma, nevus"); empty: use the preset.
            score: the decision score: "auto" (the model's own, recommended), "msp" (max softmax probability, 0 to 1), "energy" or "maxlogit" (logit units).
            threshold: known when score >= threshold, in the units of that score; omit (or null) to use the model's own calibrated or measured threshold, which is what you almost always want.
        """
        return api.answer(api.predict, service, image, preset, classes, score, threshold)

    def hvl_batch(
        images: list[str],
        preset: str = DEFAULT_PRESET,
        classes: str = "",
        score: str = api.AUTO,
        threshold: float | None = None,
    ) -> str:
        """Decide several medical images at once with HVL (one model, one encoder pass): known (one of the known classes) or unknown (refer to a specialist). Returns JSON text: a list with one object per image, in order, with the fields of hvl_predict; an image that could not be read has null fields and its reason in "error".

        Args:
            images: the images (at most 32), each an https:// URL of a public image or a data: URI (data:image/png;base64,...).
            preset: the known classes: "dermatology-isic4" (skin lesions) or "histology-nct-crc" (colorectal H&E tissue types). Ignored when classes is given.
            classes: your own known classes instead of a preset, comma-separated (e.g. "melanoma, nevus"); empty: use the preset.
            score: the decision score: "auto" (the model's own, recommended), "msp" (0 to 1), "energy" or "maxlogit" (logit units).
            threshold: known when score >= threshold, in the units of that score; omit (or null) for the model's own calibrated or measured threshold.
        """
        return api.answer(api.batch, service, images, preset, classes, score, threshold)

    gr.api(hvl_predict, api_name="predict", concurrency_id=API_GROUP)
    gr.api(hvl_batch, api_name="batch", concurrency_id=API_GROUP)
