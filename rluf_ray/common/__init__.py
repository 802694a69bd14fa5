"""Pure helpers several subjects share: answer normalisation and prompt fitting, progress lines, the frames a caught exception keeps alive."""
