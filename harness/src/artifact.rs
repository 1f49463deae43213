//! Guest artifacts: recipes, lock file, verified cache (see issue 4).
