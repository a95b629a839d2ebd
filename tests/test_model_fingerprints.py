"""Fast architecture fingerprints of the emphasis families (SqueezeNet, MobileNetV2, MobileNetV3,
ShuffleNet v1): state-dict layout, parameter count and float32 logits under the deterministic weights
of reference.py, in about a second per model.

test_zoo.py's torchvision test checks the same architectures to float64 precision, but a float64
depthwise convolution takes seconds; these float32 checks are what mutation testing runs
(benchmarks/mutation.py) after every change to a model file. A real architecture change (a stride, a
width, an activation, a residual) moves logits by O(1) of their scale; float32 against float64
reordering stays near 1e-6, so the bound here (1e-4 x max |logit|) holds on any CPU.

ShuffleNet v1 is not in torchvision: its reference logits below were recorded from this code in
float64 (``python tests/test_model_fingerprints.py``) after test_zoo.py checked its parameter and
multiply-add counts against the paper's Table 1; they catch any later change to its forward.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgecnn.models import MODELS, get_spec
from edgecnn.models._factory import build_model
from reference import deterministic_state_dict, key_layout, reference_input, reference_resolution

FIXTURES = Path(__file__).parent / "fixtures" / "torchvision"
TORCHVISION = ["squeezenet1_0", "squeezenet1_1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"]
BOUND = 1e-4  # x max |logit|
pytestmark = pytest.mark.usefixtures("one_thread")
SHUFFLENET_CLASSES = 10
# name -> (parameters, float64 logits of reference_input(3, 32) with a 10-class head)
SHUFFLENET_V1 = {
    "shufflenet_v1_g1": (960706, [
        [-479.66982, 2239.3076, -1828.6898, -1513.4824, 295.35115, -1305.2582, -181.87171, 3000.3018, 694.65149, -770.57933],
        [-737.25742, 2749.7044, -2132.9667, -1708.1661, 254.25231, -1163.7423, -429.80844, 3183.5393, 667.63047, -511.09903]]),
    "shufflenet_v1_g2": (940858, [
        [1055.3916, -1479.2988, 141.90807, -573.64379, -698.1508, 537.00482, 1206.1723, 19.512336, -407.89063, -537.1197],
        [960.08837, -1229.8916, 207.83258, -591.71437, -638.37625, 557.52671, 1110.8178, 33.98941, -324.12745, -409.25889]]),
    "shufflenet_v1_g3": (914338, [
        [4374.8117, 259.60146, -857.82767, -2349.2308, 800.40357, 2844.4357, -4508.6154, 19.993037, 107.24772, -594.73597],
        [4111.3332, 3.8924413, -1033.7043, -2110.603, 732.64256, 2544.8195, -4080.6421, 236.48433, -135.76297, -536.71304]]),
    "shufflenet_v1_g3_x0_5": (242134, [
        [-195.45614, 779.41728, -843.8463, 230.70385, -166.28495, 172.35397, -829.43708, -137.17503, -413.17571, 350.65726],
        [-277.21728, 870.79783, -988.61766, 335.6778, -318.44325, 161.81459, -1077.7429, -205.30433, -381.34206, 409.48562]]),
    "shufflenet_v1_g3_x1_5": (2015578, [
        [204.87274, -1459.9961, -34.837645, 1417.7238, -356.34447, -471.24111, -524.21179, -659.35946, 395.63069, -358.15368],
        [377.01271, -1282.0358, -5.8517121, 1463.5815, -593.51092, -367.13535, -472.59346, -500.26336, 340.6618, -488.02658]]),
    "shufflenet_v1_g3_x2_0": (3548986, [
        [-1645.7378, -1564.2535, 1314.6751, 991.18209, -1342.6022, -410.34866, 1250.2542, -1459.5489, 333.05332, -442.13694],
        [-1674.7051, -1773.3348, 1454.8016, 999.87187, -1307.9634, -180.47354, 1265.4576, -1599.0491, 375.61199, -689.49736]]),
    "shufflenet_v1_g4": (890234, [
        [158.63374, -2086.3608, -1321.0234, -1441.1996, 1297.3758, -912.3986, 1201.0706, 130.26449, 984.32301, -2478.2531],
        [89.003728, -2461.8328, -1587.0474, -1562.4533, 1245.1917, -808.87685, 1230.8266, 186.07483, 1089.8686, -2869.9297]]),
    "shufflenet_v1_g8": (913138, [
        [-2464.0604, -1545.0766, 691.9706, 609.35437, -1024.136, -2844.2985, 279.05528, 1362.8596, -1083.9771, 765.36146],
        [-2698.6116, -1761.6374, 844.46618, 684.99074, -1315.8151, -2991.6542, 514.25641, 1129.2189, -1237.301, 1015.7263]]),    # issue 25: Table 2's 0.5x and 0.25x at every group count (recorded after test_zoo.py checked their counts)
    "shufflenet_v1_g1_x0_25": (66196, [
        [-147.53366, 226.20857, 20.960979, 103.68604, 429.64817, -82.618201, 25.007453, 263.25317, -160.95243, -175.42572],
        [-190.62089, 294.45148, 72.770427, 163.3536, 378.05917, 10.803744, 9.1133276, 248.40433, -207.2102, -223.9849]]),
    "shufflenet_v1_g1_x0_5": (248374, [
        [41.098332, 216.50305, 126.31507, 302.84866, -250.87593, 63.920361, -230.64825, -147.59176, 593.40863, -497.05855],
        [-5.2300842, 241.09762, 117.49732, 313.98695, -197.71419, 77.759635, -295.70406, -123.75663, 675.91368, -578.30479]]),
    "shufflenet_v1_g2_x0_25": (65456, [
        [20.742142, 57.534969, -69.263465, 217.38063, 129.80606, -87.212518, -165.41394, 71.825941, -16.50713, -86.02019],
        [38.591788, 47.184526, -66.687048, 252.52562, 188.0419, -99.069668, -187.09256, 44.261808, -37.290498, -84.708981]]),
    "shufflenet_v1_g2_x0_5": (245766, [
        [-493.36452, 990.74921, 309.40317, -1090.3313, 1575.7529, -39.594479, -591.04513, -2767.6605, -316.95587, -671.11076],
        [-785.46811, 1555.4179, 713.04771, -1683.6577, 2330.193, -222.47452, -728.41311, -4299.772, -351.28148, -1163.1375]]),
    "shufflenet_v1_g3_x0_25": (67312, [
        [75.618302, 213.2161, 707.74403, -18.214903, -23.906015, -354.30094, 86.200353, -524.70621, -412.15659, 82.084798],
        [55.886394, 330.50928, 660.21663, 74.962167, 49.15241, -300.37114, 62.782422, -575.64113, -495.98924, 121.54359]]),
    "shufflenet_v1_g4_x0_25": (64610, [
        [60.003077, 80.812485, 89.44066, -245.51802, -503.35495, -157.46002, -138.51352, 25.959237, -37.167718, -13.647958],
        [15.910976, 152.21328, 46.286047, -268.94556, -601.8516, -192.94594, -194.58946, 6.600949, -12.190803, -87.21091]]),
    "shufflenet_v1_g4_x0_5": (236798, [
        [-666.05337, 1251.0662, 104.85439, -371.94907, -1108.739, -772.3536, -513.43092, 747.67599, 1561.8287, 574.2532],
        [-790.81924, 1418.1751, 122.05943, -373.55695, -1081.0191, -915.85328, -575.89799, 707.16457, 1604.646, 571.98828]]),
    "shufflenet_v1_g8_x0_25": (73354, [
        [-104.34022, -281.35353, -6.3028552, -449.41137, 169.18212, -452.61939, -45.651487, -650.67335, 88.38621, -113.3501],
        [-252.78928, -191.33909, 63.786658, -516.25949, 194.44595, -464.34015, 107.44078, -747.17092, 115.16103, -35.41685]]),
    "shufflenet_v1_g8_x0_5": (250138, [
        [-692.52959, -284.04509, 225.0424, -331.40111, -441.36357, -154.87629, 1401.6276, -334.52273, -415.19768, 286.25671],
        [-917.38297, -293.77921, 81.755706, -300.10443, -541.28941, -218.10537, 1677.8128, -285.84402, -477.89429, 368.17074]]),
}


@torch.no_grad()
def _logits(model: torch.nn.Module, resolution: int) -> np.ndarray:
    model.eval().load_state_dict(deterministic_state_dict(model))
    return model(reference_input(3, resolution).float()).double().numpy()


def _close(ours: np.ndarray, theirs: np.ndarray) -> None:
    theirs = np.asarray(theirs)
    worst = np.abs(ours - theirs).max() / np.abs(theirs).max()
    assert ours.shape == theirs.shape and worst <= BOUND, f"logits differ by {worst:.3g} x max |logit|"


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_family_layout_and_float32_logits(name):
    ref = json.loads(gzip.open(FIXTURES / f"{name}.json.gz", "rt").read())
    model = build_model(get_spec(name), 1000, dict(ref["build_options"]))
    assert key_layout(model) == ref["keys"], "state_dict keys/shapes differ from torchvision's"
    _close(_logits(model, reference_resolution(name)), ref["logits"])


@pytest.mark.parametrize("name", sorted(SHUFFLENET_V1))
def test_shufflenet_v1_params_and_float32_logits(name):
    params, logits = SHUFFLENET_V1[name]
    model = build_model(get_spec(name), SHUFFLENET_CLASSES, {})
    assert sum(p.numel() for p in model.parameters()) == params
    _close(_logits(model, 32), logits)


@pytest.mark.parametrize("name, p", [("squeezenet1_0", 0.5), ("squeezenet1_1", 0.5), ("mobilenet_v2", 0.2),
                                     ("mobilenet_v3_small", 0.2), ("mobilenet_v3_large", 0.2)])
def test_classifier_dropout_is_torchvision_s(name, p):
    model = build_model(get_spec(name), 10, {})
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [p]


def test_squeezenet_random_init_small_class_logits_zero_biases():
    """Paper/torchvision init: the final (class) conv N(0, 0.01), every other conv Kaiming-uniform, biases 0."""
    torch.manual_seed(0)
    model = build_model(get_spec("squeezenet1_1"), 1000, {})
    final = model.classifier[1]
    w = final.weight.detach()
    assert abs(float(w.std()) - 0.01) < 0.0005 and abs(float(w.mean())) < 0.0005
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 26 and convs[-1] is final
    for conv in convs:
        assert torch.count_nonzero(conv.bias) == 0
        if conv is not final:
            bound = (6.0 / conv.weight[0].numel()) ** 0.5  # kaiming_uniform_: U(-b, b), b = sqrt(6 / fan_in)
            assert 0.9 * bound < float(conv.weight.detach().abs().max()) <= bound


def test_every_shufflenet_v1_variant_has_a_fingerprint():
    assert sorted(SHUFFLENET_V1) == sorted(n for n in MODELS.names() if MODELS.get(n).family == "shufflenet_v1")


if __name__ == "__main__":  # re-record the ShuffleNet v1 fingerprints (float64), every registered member
    for name in sorted(n for n in MODELS.names() if MODELS.get(n).family == "shufflenet_v1"):
        m = build_model(get_spec(name), SHUFFLENET_CLASSES, {}).double().eval()
        m.load_state_dict(deterministic_state_dict(m))
        with torch.no_grad():
            y = m(reference_input(3, 32)).numpy()
        print(f'    "{name}": ({sum(p.numel() for p in m.parameters())}, '
              f'{[[float(f"{v:.8g}") for v in row] for row in y]}),')
