"""The comparison variants are the paper's Table 2 rows and Fig. 2's ablation, with titles that say so."""

from hvl_tools.config import MCM_TAU, PAPER_ROWS, VARIANT_TITLES, VARIANTS, variant_title


def _switches(opts: dict) -> tuple[bool, bool, bool]:
    """Table 2's ✓ columns from head options: L_OOD, ΔH selection (only meaningful with L_OOD), CSF."""
    ood = opts.get("use_ood_loss", True)
    dh = ood and opts.get("pseudo_ood_selection", "entropy_gain") == "entropy_gain"
    return ood, dh, opts.get("fusion", True)


def test_all_six_table2_rows_exist_once_with_the_right_switches():
    # the paper's Table 2, top to bottom: (L_OOD, ΔH, CSF)
    table2 = {
        1: (False, False, False),
        2: (False, False, True),
        3: (True, False, False),
        4: (True, True, False),
        5: (True, False, True),
        6: (True, True, True),
    }
    rows = {row: name for name, (row, _) in PAPER_ROWS.items() if row is not None}
    assert sorted(rows) == [1, 2, 3, 4, 5, 6]
    for row, marks in table2.items():
        name = rows[row]
        trained, method, opts = VARIANTS[name]
        assert trained and method == "hvl"
        assert _switches(opts) == marks == PAPER_ROWS[name][1], name
        assert opts.get("propagate", True)
        assert VARIANT_TITLES[name].startswith(f"Table 2 row {row}:")
    assert rows[6] == "hvl" and VARIANTS["hvl"][2] == {}


def test_rows_1_and_3_are_without_fusion_and_titled_so():
    for name in ("bare-head", "entropy-selection-no-fusion"):
        assert VARIANTS[name][2]["fusion"] is False
        assert "no CSF" in VARIANT_TITLES[name]


def test_fig2_no_propagation_and_the_baselines():
    assert VARIANTS["no-propagation"] == (True, "hvl", {"propagate": False})
    assert VARIANT_TITLES["no-propagation"].startswith("Fig. 2 left")
    assert VARIANTS["mcm"][:2] == (False, "mcm") and VARIANTS["zero-shot-hvl"] == (False, "hvl", {})
    # MCM's own temperature is T = 1, and its title says which temperature a table used
    assert MCM_TAU == 1.0 and VARIANTS["mcm"][2]["tau"] == MCM_TAU
    assert variant_title("mcm").endswith("T = 1)") and variant_title("mcm", 0.01).endswith("T = 0.01)")
    assert set(VARIANT_TITLES) == set(VARIANTS) and len(set(VARIANT_TITLES.values())) == len(VARIANTS)
