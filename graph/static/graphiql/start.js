// Starts GraphiQL (the vendored UMD bundles, loaded before this file) against the endpoint
// that served the page. A file, not an inline script, so that the page's
// Content-Security-Policy allows scripts from the server's origin only.
(function () {
  "use strict";

  // GraphiQL's dialogs add one <style> element (react-remove-scroll), which takes its nonce
  // from this global; the page gives this script the nonce its policy allows for styles.
  window.__webpack_nonce__ = document.currentScript.nonce;

  var HEADERS_TEMPLATE = '{\n  "Authorization": "Bearer "\n}';
  var DEFAULT_QUERY =
    "# Log in with the logIn mutation, then paste its accessToken after\n" +
    '# "Bearer " in the Headers tab below.\n\n' +
    "{\n  me {\n    name\n    email\n  }\n}\n";

  var params = new URLSearchParams(window.location.search);
  var endpoint = window.location.origin + window.location.pathname;
  var socket = new URL(endpoint);
  socket.protocol = socket.protocol === "https:" ? "wss:" : "ws:";

  // Subscriptions go over graphql-transport-ws to the same path; the headers become the
  // connection's `connection_init` payload.
  var fetcher = GraphiQL.createFetcher({ url: endpoint, subscriptionUrl: socket.href });

  // The template's "Bearer " with no token after it is left out, rather than sent as bad
  // credentials (which every operation, the schema's introspection too, would refuse).
  function withoutEmptyCredentials(headers) {
    var kept = {};
    Object.keys(headers || {}).forEach(function (name) {
      var value = headers[name];
      var empty = typeof value === "string" && /^\s*(bearer)?\s*$/i.test(value);
      if (!(name.toLowerCase() === "authorization" && empty)) {
        kept[name] = value;
      }
    });
    return kept;
  }

  function fetch(graphQLParams, options) {
    var opts = Object.assign({}, options);
    opts.headers = withoutEmptyCredentials(opts.headers);
    return fetcher(graphQLParams, opts);
  }

  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetch,
      plugins: [GraphiQLPluginExplorer.explorerPlugin()],
      defaultQuery: DEFAULT_QUERY,
      query: params.get("q") || undefined,
      variables: params.get("variables") || undefined,
      headers: params.get("headers") || undefined,
      defaultHeaders: HEADERS_TEMPLATE,
      isHeadersEditorEnabled: true,
      // Access tokens are not kept in localStorage, where they would outlive the tab.
      shouldPersistHeaders: false,
      defaultEditorToolsVisibility: "headers",
      inputValueDeprecation: true,
    }),
  );
})();
