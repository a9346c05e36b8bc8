"""Government services column (政务服务): item catalogue, one-tap applications, review,
supervision (电子监察), delivery and rating (好差评)."""
