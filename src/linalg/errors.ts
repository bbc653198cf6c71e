/** Thrown by Cholesky factorisations when the matrix is not (numerically) positive definite. */
export class NotPositiveDefiniteError extends Error {
  constructor(
    /** 0-based index of the pivot that was not positive. */
    readonly pivot: number,
    what = 'matrix',
  ) {
    super(`cholesky: ${what} is not positive definite (pivot ${pivot} is not positive)`);
    this.name = 'NotPositiveDefiniteError';
  }
}
