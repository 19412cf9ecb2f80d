"""The worker's batch path: numpy batch columns to CPU tensors with as few copies as safe."""

from __future__ import annotations

import numpy as np
import torch

from audiosweep.train.worker_data import host_tensor


def test_writable_float32_batches_are_shared_not_copied():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensor = host_tensor(array, pin=False)
    assert tensor.data_ptr() == array.ctypes.data
    assert tensor.dtype == torch.float32 and tensor.shape == (3, 4)


def test_read_only_batches_are_copied_once_with_the_same_values():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    array.flags.writeable = False
    tensor = host_tensor(array, pin=False)
    assert tensor.data_ptr() != array.ctypes.data
    tensor += 1  # the pipeline may write its input: the object store's buffer stays intact
    np.testing.assert_array_equal(array, np.arange(12, dtype=np.float32).reshape(3, 4))


def test_other_dtypes_become_float32():
    tensor = host_tensor(np.ones((2, 3), dtype=np.float64), pin=False)
    assert tensor.dtype == torch.float32
    torch.testing.assert_close(tensor, torch.ones(2, 3))
