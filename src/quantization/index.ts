/** bitsandbytes-compatible 4-bit (NF4/FP4) and 8-bit weight formats: quantizers, dequantizers, checkpoint tensors, config. */
export { FOUR_BIT_TYPES, FP4_CODE, NF4_CODE, dynamicCode, fourBitBounds, fourBitCode } from './codes';
export type { FourBitType } from './codes';
export { torchMeanFloat32, torchSumFloat32 } from './torch_sum';
export { dequantizeBlockwise8, quantizeBlockwise8 } from './blockwise8';
export type { Blockwise8 } from './blockwise8';
export { WEIGHT_DTYPES, roundToDtype } from './weight_dtype';
export type { WeightDtype } from './weight_dtype';
export {
  FOUR_BIT_BLOCK_SIZES,
  NESTED_BLOCK_SIZE,
  blockScales,
  checkFourBitState,
  dequantize4bit,
  dequantize4bitRows,
  quantize4bit,
} from './fourbit';
export type { FourBitState, NestedAbsmax, NestedFourBitState, PlainFourBitState, Quantize4bitOptions } from './fourbit';
export { checkInt8State, dequantizeInt8, dequantizeInt8Rows, quantizeInt8 } from './int8';
export type { Int8State, QuantizeInt8Options } from './int8';
export {
  FOUR_BIT_TENSOR_NAMES,
  INT8_TENSOR_NAMES,
  QUANT_STATE_PREFIX,
  fourBitFromTensors,
  fourBitToTensors,
  int8FromTensors,
  int8ToTensors,
  packQuantState,
  quantizedFormat,
} from './bnb_tensors';
export type { QuantStorage, RawTensor, TensorSource } from './bnb_tensors';
export { BITS_AND_BYTES_DEFAULTS, bitsAndBytesConfigToJson, parseBitsAndBytesConfig, quantizationMethod } from './config';
export type { BitsAndBytesConfig, ComputeDtype } from './config';
export { VIDEO_LLAVA_DEFAULT_SKIP, isQuantizedModule, modulesToNotConvert, quantizedModules } from './modules';
