/** Linear algebra on tfjs for GPTQ: Gram matrix, blocked Cholesky, inverses. */
export { NotPositiveDefiniteError } from './errors.js';
export { gram } from './gram.js';
export { cholesky, choleskyBlocked, upperCholesky, DEFAULT_BLOCK, type BlockOptions } from './cholesky.js';
export { choleskyInverse, choleskyInverseBlocked, inverseUpperCholesky, inverseUpperCholeskyReversed, lowerTriangularInverse, type InverseTimings } from './inverse.js';
export { CHOLESKY_INVERSE_KERNEL, CHOLESKY_KERNEL, GRAM_KERNEL, hasKernel } from './kernels.js';
