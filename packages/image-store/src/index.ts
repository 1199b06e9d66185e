/**
 * @podvisor/image-store: base images in a shared, content-addressed cache and
 * one qcow2 overlay (the pet disk) per VM.
 */
export { ContentImageStore, ImageStoreSettings, DEFAULT_MAX_VIRTUAL_SIZE, deriveTarget, schemeOf, assertSafeName } from './content-image-store.js';
export { LocalFileImageSource } from './local-file-image-source.js';
export { qemuImgInfo, qemuImgCreateOverlay } from './qemu-img.js';
export type { QemuImgInfo } from './qemu-img.js';
export { imageStoreModule } from './image-store-module.js';
