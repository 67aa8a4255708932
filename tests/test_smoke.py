from conftest import SPECS


def test_shipped_specs_compile(cli):
    assert SPECS, "specs/ holds the shipped specs"
    for spec in SPECS:
        code, out, err = cli("compile", spec)
        assert code == 0, err
        assert out.startswith("program ")
        assert "\nphase " in out
