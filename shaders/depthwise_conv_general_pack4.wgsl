// depthwise_conv_general.wgsl with each invocation working on 4 neighbouring channels through
// vec4 loads and stores, for channel counts that are a multiple of 4 (every layer of timm's
// aligned Xceptions): any stride, dilation and padding, the folded batchnorm's bias and a ReLU
// on the output, optionally a ReLU on the input as it is read.

alias Lanes = vec4<f32>;
alias StoredLanes = vec4<Stored>;
const LANES: u32 = 4u;
#include "depthwise_general.wgsl"
