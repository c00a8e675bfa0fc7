// Experiment for bench/connect.py --init-script: the widget without its early socket (widget/boot.js opens
// the socket while the runtime loads and Python takes it), to measure what that socket gains in the same
// tree. boot.js opens it only when the page's settings name the protocol version; this hides that value
// from boot.js's JSON.parse. Python reads the settings with its own json module, so it is not affected.
(() => {
  const parse = JSON.parse;
  JSON.parse = function (text, reviver) {
    const value = parse.call(JSON, text, reviver);
    if (value && typeof value === "object" && "protocol_version" in value && "words" in value) delete value.protocol_version;
    return value;
  };
})();
