/** Bindings of the image store package. The composition root binds `ImageStoreSettings`. */
import { ContainerModule } from 'inversify';
import { ImageSource, ImageStore } from '@podvisor/core';
import { ContentImageStore } from './content-image-store.js';
import { LocalFileImageSource } from './local-file-image-source.js';

export const imageStoreModule = new ContainerModule((bind) => {
  bind(ImageSource).to(LocalFileImageSource).inSingletonScope();
  bind(ImageStore).to(ContentImageStore).inSingletonScope();
});
