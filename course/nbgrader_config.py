"""nbgrader configuration of the cnnwidgets course (run nbgrader from this folder).

    cd course
    nbgrader generate_assignment cnn_inside   # release/cnn_inside: the student version
    nbgrader autograde cnn_inside             # grades submitted/<student>/cnn_inside/

Only source/ is kept in git; release/, submitted/, autograded/, feedback/ and
gradebook.db are made by nbgrader.
"""

c = get_config()  # noqa: F821  (nbgrader provides get_config when it loads this file)

c.CourseDirectory.course_id = "cnnwidgets"
c.CourseDirectory.db_assignments = [dict(name="cnn_inside")]

# What students find in place of each solution region.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# A cell may import TensorFlow and compute Grad-CAM on a busy laptop CPU.
c.Execute.timeout = 300
c.Execute.kernel_name = "python3"
