"""What `make install` must leave working: facenet-pytorch beside current torch/numpy."""

from pathlib import Path

import numpy as np
import torch


def test_mtcnn_loads_the_weights_its_wheel_ships():
    import facenet_pytorch
    from facenet_pytorch import MTCNN

    shipped = Path(facenet_pytorch.__file__).parent / "data"
    detector = MTCNN(device="cpu")
    for name, net in (("pnet", detector.pnet), ("rnet", detector.rnet), ("onet", detector.onet)):
        state = torch.load(shipped / f"{name}.pt", weights_only=True)
        loaded = net.state_dict()
        assert state.keys() == loaded.keys()
        assert all(torch.equal(loaded[key], value) for key, value in state.items()), name


def test_mtcnn_detects_a_drawn_face_under_numpy_2():
    from facenet_pytorch import MTCNN

    from podium.sample_data.faces import random_appearance, render_face

    image = np.full((240, 320, 3), 120, np.uint8)
    truth = render_face(image, random_appearance(np.random.default_rng(3)), (160, 120), 110)
    boxes, probs = MTCNN(device="cpu", keep_all=True).detect(image)
    boxes = np.asarray(boxes, dtype=np.float32)  # an object array under numpy 2
    assert boxes.shape[1:] == (4,) and probs[0] > 0.9
    x1, y1, x2, y2 = boxes[0]
    assert truth[0] - 10 < (x1 + x2) / 2 < truth[2] + 10 and truth[1] < (y1 + y2) / 2 < truth[3]
