/**
 * Typed errors. Every error names what was wrong (file, tensor, field or argument), what was expected
 * and what was found, so that a user can act on it without reading a stack trace.
 */

export class VideoLlavaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A safetensors file (or shard index) is malformed, truncated or inconsistent. */
export class SafetensorsError extends VideoLlavaError {
  constructor(
    readonly file: string,
    message: string,
    readonly tensor?: string,
  ) {
    super(`${file}${tensor ? ` [${tensor}]` : ''}: ${message}`);
  }
}

/** A checkpoint does not fit the model: missing, unexpected or wrongly shaped weights. */
export class WeightsError extends VideoLlavaError {
  constructor(
    message: string,
    readonly tensor?: string,
    readonly file?: string,
  ) {
    super(message);
  }
}

/** A config.json field has the wrong type or an unsupported value. */
export class ConfigError extends VideoLlavaError {
  constructor(
    readonly field: string,
    message: string,
    readonly file?: string,
  ) {
    super(`${file ? `${file}: ` : ''}config field "${field}": ${message}`);
  }
}

/** Model inputs are inconsistent: shapes, placeholder counts, lengths. */
export class InputError extends VideoLlavaError {
  constructor(
    readonly argument: string,
    message: string,
  ) {
    super(`${argument}: ${message}`);
  }
}

/** An image or video could not be read or decoded. */
export class MediaError extends VideoLlavaError {
  constructor(
    readonly source: string,
    message: string,
  ) {
    super(`${source}: ${message}`);
  }
}

/** Tokenizer files are missing or malformed. */
export class TokenizerError extends VideoLlavaError {}

/** A tfjs backend was asked for but cannot be used. */
export class BackendError extends VideoLlavaError {}

/**
 * A quantized weight (bitsandbytes 4-bit or 8-bit state) is malformed or cannot be quantized: names the
 * tensor (or module path) and the part of the state that is wrong.
 */
export class QuantizationError extends VideoLlavaError {
  constructor(
    readonly tensor: string,
    message: string,
    readonly file?: string,
  ) {
    super(`${file ? `${file}: ` : ''}${tensor}: ${message}`);
  }
}
