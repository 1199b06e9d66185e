/**
 * @podvisor/image-store: base images from http(s) URLs or local paths in a
 * shared, content-addressed, verified cache; one qcow2 overlay (the pet disk)
 * per VM; safe rebases onto newer bases; garbage collection of unused bases.
 */
export { ContentImageStore, ImageStoreSettings, DEFAULT_MAX_VIRTUAL_SIZE } from './content-image-store.js';
export { HttpImageSource, HttpImageSourceSettings, DEFAULT_HTTP_SETTINGS } from './http-image-source.js';
export { LocalFileImageSource } from './local-file-image-source.js';
export { ImageCacheLayout, sha256OfPath } from './image-cache-layout.js';
export type { CacheMeta } from './image-cache-layout.js';
export { listImageCache, collectImageGarbage } from './image-cache-gc.js';
export type { ImageCacheListing, ImageGcOptions, ImageGcReport } from './image-cache-gc.js';
export { acquireCacheLock, DEFAULT_LOCK_OPTIONS } from './cache-lock.js';
export type { CacheLockOptions, HeldLock, LockOwner } from './cache-lock.js';
export { ProgressMeter } from './progress-meter.js';
export { deriveTarget, schemeOf, localPath, assertSafeName } from './image-uri.js';
export { qemuImgInfo, qemuImgCheck, qemuImgCreateOverlay } from './qemu-img.js';
export type { QemuImgInfo } from './qemu-img.js';
export { imageStoreModule, imageStorePlugin } from './image-store-module.js';

export { imageStorePlugin as default } from './image-store-module.js';
