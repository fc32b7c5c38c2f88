// Node 20 lacks Promise.withResolvers (Node 22 has it), which it-queue, a dependency of
// verified-fetch 4, calls. The same semantics, for the test client only.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve
    let reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
