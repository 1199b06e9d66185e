/**
 * Bindings of the image store package: the `file` and `http(s)` sources and
 * the content-addressed store. The composition root binds
 * `ImageStoreSettings`, and may bind `HttpImageSourceSettings` (timeouts,
 * retries, redirects); without it the defaults apply.
 */
import { ContainerModule } from 'inversify';
import { ImageSource, ImageStore } from '@podvisor/core';
import { ContentImageStore } from './content-image-store.js';
import { HttpImageSource } from './http-image-source.js';
import { LocalFileImageSource } from './local-file-image-source.js';

export const imageStoreModule = new ContainerModule((bind) => {
  bind(ImageSource).to(LocalFileImageSource).inSingletonScope();
  bind(ImageSource).to(HttpImageSource).inSingletonScope();
  bind(ContentImageStore).toSelf().inSingletonScope();
  bind(ImageStore).toService(ContentImageStore);
});
