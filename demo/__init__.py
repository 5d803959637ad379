"""The web demo (``diga demo``): a Gradio app over :class:`diga.export.Predictor`.

* :mod:`diga.demo.inputs` -- decoding/validation of uploads (pure; ``DemoInputError`` messages);
* :mod:`diga.demo.render` -- labels -> colour mask, overlay, legend, class shares (pure);
* :mod:`diga.demo.app` -- ``build_app``, ``serve``, ``launch``, ``find_before_model``;
* :mod:`diga.demo.examples` -- synthetic target-domain example images, generated once and cached;
* :mod:`diga.demo.screenshot` -- headless-Chromium screenshots of a running demo.

Nothing is imported here, so ``import diga.demo.inputs`` does not pull in Gradio.
"""
