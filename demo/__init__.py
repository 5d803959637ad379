"""The web demo (``diga demo``): a Gradio app over :class:`diga.export.Predictor`.

* :mod:`diga.demo.inputs` -- decoding/validation of uploads (pure; ``DemoInputError`` messages);
* :mod:`diga.demo.render` -- labels -> colour mask, overlay, legend, class shares (pure);
* :mod:`diga.demo.discovery` -- which model to serve and its before-adaptation model; loading them;
* :mod:`diga.demo.logic` -- what a request does (decode, predict, downloads, views, messages), no Gradio;
* :mod:`diga.demo.layout` -- ``build_app``: the Gradio page wired to the logic;
* :mod:`diga.demo.app` -- ``serve`` and ``launch`` (what ``diga demo`` runs);
* :mod:`diga.demo.examples` -- synthetic target-domain example images, generated once and cached.

Nothing is imported here, so ``import diga.demo.inputs`` does not pull in Gradio.
"""
