/**
 * Bindings of the image store package and its plugin manifest: the `file`,
 * `http` and `https` image sources (each an `image-source` provision named
 * after its scheme) and the content-addressed store, which finds a source
 * through the `ImageSourceCatalog` the composition root builds from the
 * plugin registry. The composition root binds `ImageStoreSettings`, and may
 * bind `HttpImageSourceSettings` (timeouts, retries, redirects); without it
 * the defaults apply. The store loads through the same plugin loader as a
 * third-party image source.
 */
import { ContainerModule } from 'inversify';
import { ImageSource, ImageStore, PLUGIN_API_VERSION, type PluginManifest } from '@podvisor/core';
import { ContentImageStore } from './content-image-store.js';
import { HttpImageSource } from './http-image-source.js';
import { LocalFileImageSource } from './local-file-image-source.js';

export const imageStoreModule = new ContainerModule((bind) => {
  bind(LocalFileImageSource).toSelf().inSingletonScope();
  bind(HttpImageSource).toSelf().inSingletonScope();
  bind<ImageSource>(ImageSource).toDynamicValue((ctx) => ctx.container.get(LocalFileImageSource)).whenTargetNamed('file');
  bind<ImageSource>(ImageSource).toDynamicValue((ctx) => ctx.container.get(HttpImageSource)).whenTargetNamed('http');
  bind<ImageSource>(ImageSource).toDynamicValue((ctx) => ctx.container.get(HttpImageSource)).whenTargetNamed('https');
  bind(ContentImageStore).toSelf().inSingletonScope();
  bind(ImageStore).toService(ContentImageStore);
});

export const imageStorePlugin: PluginManifest = {
  name: '@podvisor/image-store',
  apiRange: `^${PLUGIN_API_VERSION}`,
  provides: [
    { kind: 'image-source', name: 'file' },
    { kind: 'image-source', name: 'http' },
    { kind: 'image-source', name: 'https' },
  ],
  module: imageStoreModule,
};
