// Depthwise 3x3 convolution of any stride, dilation and padding, NHWC, with the batchnorm
// after it folded in as a bias and an optional ReLU on its output; optionally applies ReLU to
// the input as it is read. Kernel layout [3][3][channels] (Keras [3, 3, C, 1]). The layers of
// timm's aligned Xceptions that the plain depthwise kernels do not take (stride 2, dilation,
// a bias) run here; taps outside the input add nothing.

alias Lanes = f32;
alias StoredLanes = Stored;
const LANES: u32 = 1u;
#include "depthwise_general.wgsl"
