"""ledviz: see how LED (Longformer-Encoder-Decoder) reads a long document.

The frame of the app: page setup, the navigation over the pages, and the sidebar every page
shares (the model, and which layers and heads the attention views show). Run with
`streamlit run app.py`; the embedded demo model works offline (LEDVIZ_MODEL points elsewhere).
"""

import streamlit as st

from ledviz import plots
from ledviz.errors import LedvizError
from pages.common import as_typed, attention_sidebar, model_sidebar, stay_in_app_frame
from pages.running import app_settings

stay_in_app_frame()  # a run that Streamlit would hand to a page file alone comes back here (see there)
st.set_page_config(page_title="ledviz · LED attention", page_icon=":material/visibility:", layout="wide")

try:  # the deployment settings (environment, .streamlit/secrets.toml): wrong ones stop the app
    app_settings()
except LedvizError as err:
    st.error(f"The server's deployment settings are wrong: {as_typed(str(err))}", icon=":material/error:")
    st.stop()

# the check whether PNG/SVG export works starts a headless browser (plots.ImageExport, once per process):
# started here, it runs while the user reads the page; started at the first figure, it competed with the
# first answer's run and drawing for the same cores (the QA page's first answer in headless Chromium on
# 2 busy cores: 3.6-4.3 s -> 2.5-3.4 s)
plots.ImageExport.shared()

pages = {
    "Read a document": [
        st.Page("pages/summarize.py", title="Summarize", icon=":material/summarize:", default=True),
        st.Page("pages/qa.py", title="Question answering", icon=":material/question_answer:"),
    ],
    "Explore": [
        st.Page("pages/lab.py", title="Attention lab", icon=":material/science:"),
        st.Page("pages/study.py", title="Corpus study", icon=":material/query_stats:"),
        st.Page("pages/how_it_works.py", title="How LED attention works", icon=":material/school:"),
        st.Page("pages/model.py", title="The model", icon=":material/memory:"),
    ],
}
page = st.navigation(pages)

# the shared sidebar, drawn before the page so every page sees the same model and view
loaded = model_sidebar()
attention_sidebar(loaded)

page.run()
