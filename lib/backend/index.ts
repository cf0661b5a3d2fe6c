/** The compute backend: native TensorFlow (GPU or CPU) when installed, else WebAssembly, else plain JS. */
export { initBackend, currentBackend, switchBackend, tensorMemory, BACKEND_ORDER } from './backend';
export type { BackendName, BackendChoice } from './backend';
