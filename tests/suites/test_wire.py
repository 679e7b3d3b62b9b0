"""What crosses from a worker: plain data as JSON, read without running anything."""

import numpy as np
import pytest

from adjointbench.suites.wire import NotPlainData, dumps, loads, measurements, plain


def test_plain_data_crosses_intact():
    answer = ("ok", {"x": np.arange(6.0).reshape(2, 3), "n": np.float32(2.5), "flags": [True, None],
                     "z": 1 + 2j, "name": "softmax", "k": np.int64(3)})
    back = loads(dumps(plain(answer)))
    assert back[0] == "ok" and back[1]["name"] == "softmax" and back[1]["flags"] == [True, None]
    np.testing.assert_array_equal(back[1]["x"], answer[1]["x"])
    assert back[1]["n"].dtype == np.float32 and back[1]["n"] == 2.5
    assert back[1]["k"] == 3 and back[1]["z"] == 1 + 2j


def test_an_array_subclass_or_an_object_with_array_is_converted_in_the_worker():
    class Sub(np.ndarray):
        pass

    class HasArray:
        def __array__(self, dtype=None, copy=None):
            return np.ones(2, dtype=dtype)

    assert type(plain(np.zeros(2).view(Sub))) is np.ndarray
    np.testing.assert_array_equal(plain(HasArray()), np.ones(2))
    with pytest.raises(NotPlainData, match="not an array of numbers"):
        plain(object())


def test_anything_but_tagged_plain_data_is_refused():
    with pytest.raises(NotPlainData, match="not plain data"):
        loads(b'{"reduce": ["os.system", ["echo should never run"]]}')
    with pytest.raises(NotPlainData, match="dtype object"):
        loads(b'{"a": ["|O", [1], ""]}')
    with pytest.raises(NotPlainData, match="not plain data as JSON"):
        loads(b"\x80\x04 a pickle")


def test_measurements_keep_the_named_fields_of_their_kinds_only():
    kinds = {"time_median_s": float, "rounds": int, "samples_s": list}
    got = measurements({"time_median_s": np.float64(0.5), "rounds": 3, "samples_s": [1, 2.0],
                        "impl": "numpy"}, kinds)
    assert got == {"time_median_s": 0.5, "rounds": 3, "samples_s": [1.0, 2.0]}
    with pytest.raises(NotPlainData, match="rounds"):
        measurements({"rounds": "three"}, kinds)
