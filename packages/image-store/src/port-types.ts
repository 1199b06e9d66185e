/** The image port shapes, re-exported for users of this package. */
export type { ImageFetchOptions, SourceValidators, FetchRetry, EnsureBaseRequest, ImagePullProgress, RebaseResult } from '@podvisor/core';
