"""One module per tab: each builds its components (`build`) and turns an analysis into their values
(`render`); views redrawn from the stored result (the model is not run again) live with their tab."""
