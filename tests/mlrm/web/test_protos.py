from mlrm.web.protos import ROOT, protos, stale


def test_every_proto_has_fresh_generated_code():
    assert protos(), "no .proto found"
    old = [str(p.relative_to(ROOT)) for p in stale()]
    assert not old, f"{', '.join(old)} differ from their .proto: run `python -m mlrm.web.protos`"
