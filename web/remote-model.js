/**
 * The page's side of web/worker.js: the wasm `Model`'s API with each call a message to the
 * worker that holds the model.
 */

/** The model in the worker, with the wasm `Model`'s getters (read once, at creation) and
 * methods. */
export class RemoteModel {
  /** Starts the worker and loads the `build` ("single" or "threads", with `threads`). */
  static async load(build, threads) {
    const remote = new RemoteModel();
    try {
      await remote.call("load", [build, threads]);
    } catch (err) {
      remote.worker.terminate();
      throw err;
    }
    return remote;
  }

  constructor() {
    this.worker = new Worker(new URL("worker.js", import.meta.url), { type: "module" });
    this.pending = new Map();
    this.nextId = 0;
    this.worker.onmessage = ({ data: { id, value, error } }) => {
      const call = this.pending.get(id);
      this.pending.delete(id);
      if (error === undefined) call.resolve(value);
      else call.reject(new Error(error));
    };
    this.worker.onerror = (event) => {
      event.preventDefault();
      const error = new Error(`the model's worker failed: ${event.message || "it could not start"}`);
      for (const call of this.pending.values()) call.reject(error);
      this.pending.clear();
    };
  }

  /** Creates the model over the weights; resolves with this, its getters filled in. */
  async create(weights, options) {
    Object.assign(this, await this.call("create", [weights, options]));
    return this;
  }

  classifyEncoded(bytes, name, top) {
    return this.call("classifyEncoded", [bytes, name, top], [bytes.buffer]);
  }

  classifyPixels(rgba, width, height, name, top) {
    return this.call("classifyPixels", [rgba, width, height, name, top], [rgba.buffer]);
  }

  call(call, args, transfer = []) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, call, args }, transfer);
    });
  }
}
