// Jobs: filled in below the shell commit.
export default {
  id: "jobs",
  title: "Jobs",
  role: "user",
  render(root, { h }) {
    root.appendChild(h("p", {}, "Jobs"));
  },
};
