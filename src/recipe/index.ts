/** YAML recipes ↔ modifier objects. */
export { loadRecipe, parseRecipe, recipeToYaml } from './recipe.js';
